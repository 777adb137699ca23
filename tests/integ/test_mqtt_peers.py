"""The MQTT test peers themselves, without komd (mqttpeers.py): mosquitto's store survives
SIGKILL with a persistent subscriber's queued messages, mosquitto_pub/sub -V 5, the scripted
broker on npm mqtt-packet (topic alias, CONNACK properties, held acknowledgements) read by
paho, and tshark decoding MQTT on a free port. If these fail, the test_mqtt_* results say
nothing about komd."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import main  # noqa: E402
import mqttpeers  # noqa: E402


def test_peers():
    mqttpeers._selftest()


if __name__ == "__main__":
    main([test_peers])
