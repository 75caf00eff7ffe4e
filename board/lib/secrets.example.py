# Copy to lib/secrets.py and fill in. The first block is the original
# project's file, unchanged; every other setting is optional (defaults shown).

WIFI_SSID = "SSID-To Connect to"
WIFI_PASS = "wifi password"
MQTT_SERVER = "192.168.1.10"  # an IP address or a host name
MQTT_PORT = 1883
HOSTNAME = "pico-meter"
SERIESNAME = "power"
MQTT_TOPIC = "home/power"

# The meter: its constant is printed on the front (imp/kWh).
# IMP_PER_KWH = 1000
# PULSE_PIN = 22            # GPIO of the sensor's digital output
# PULSE_PULL = "up"         # "up" for open-collector / S0, "down", "none"
# PULSE_EDGE = "falling"    # the edge where the LED turns on
# MAX_POWER_W = 24000       # pulses closer than this power allows are ghosts
# PULSE_WIDTH_MIN_MS = 0    # both 0: no pulse-width filter
# PULSE_WIDTH_MAX_MS = 0

# Readings.
# REPORT_INTERVAL_S = 10
# POWER_TIMEOUT_S = 300     # no pulse for this long: 0 W
# PERSIST_INTERVAL_S = 60   # energy total to flash at most this often (a power cut loses at most this)
# QUEUE_SIZE = 2880         # readings kept while offline (8 h at 10 s)

# Network.
# NTP_HOST = "pool.ntp.org"
# MQTT_USER = ""
# MQTT_PASS = ""
# MQTT_TLS = False
# MQTT_CA_FILE = ""         # e.g. "ca.der" on the board: verify the broker
# AVAILABILITY_TOPIC = ""   # default picopower/<HOSTNAME>/status
# STATUS_TOPIC = ""         # retained health message; default <MQTT_TOPIC>/status
# REVISION_TOPIC = "home/power/revised"  # default <MQTT_TOPIC>/revised: exact past windows; "" = off
# HA_DISCOVERY = False      # Home Assistant MQTT discovery

# Several meters on one board:
# CHANNELS = [
#     {"PIN": 22, "IMP_PER_KWH": 1000, "SERIESNAME": "house"},
#     {"PIN": 21, "IMP_PER_KWH": 800, "SERIESNAME": "heatpump"},
# ]
