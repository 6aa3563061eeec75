"""IEC 60870-5-104 outstation simulator (c104 server): see `outstation.Outstation`."""

from simulators.iec104.outstation import Outstation, PointDef, Update, build_points, run_simulator

__all__ = ["Outstation", "PointDef", "Update", "build_points", "run_simulator"]
