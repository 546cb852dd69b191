"""Telemetry: MQTT publisher (aiomqtt) behind the `Publisher` protocol, and its pydantic message models."""
