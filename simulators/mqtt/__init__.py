"""MQTT AMR head-end simulator: JSON and Sparkplug B readings with labelled faults."""

from simulators.mqtt.headend import FAULT_KINDS, HeadEnd, HeadEndConfig, Published, read_labels, run_simulator

__all__ = ["FAULT_KINDS", "HeadEnd", "HeadEndConfig", "Published", "read_labels", "run_simulator"]
