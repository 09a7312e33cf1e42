"""The probe heads, one module per family; registered by name in :mod:`probes.factory`."""
