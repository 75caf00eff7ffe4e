"""Blink codes for the on-board LED, one per connection state.

Each code is a cycle of (on ms, off ms) pairs, read off the loop's clock, so
showing it costs the loop nothing but a comparison:

    BOOT             solid on
    CONFIG_ERROR     fast blink, 5 per second (the REPL lists the problems)
    WIFI             1 blink per second: joining Wi-Fi
    CLOCK            2 short blinks every 2 s: waiting for NTP
    BROKER           3 short blinks every 2 s: connecting to the MQTT broker
    ONLINE           one 30 ms flash every 5 s (heartbeat)
    OFFLINE          4 short blinks every 2 s: readings are being queued
"""

CODES = {
    "BOOT": ((1000, 0),),
    "CONFIG_ERROR": ((100, 100),),
    "WIFI": ((500, 500),),
    "CLOCK": ((100, 200), (100, 1600)),
    "BROKER": ((100, 200), (100, 200), (100, 1300)),
    "ONLINE": ((30, 4970),),
    "OFFLINE": ((100, 200), (100, 200), (100, 200), (100, 1000)),
}


def lit(code, ms):
    """Whether the LED is on `ms` into the cycle of blink code `code`."""
    pattern = CODES[code]
    period = 0
    for on, off in pattern:
        period += on + off
    t = ms % period
    for on, off in pattern:
        if t < on:
            return True
        t -= on + off
        if t < 0:
            return False
    return False
