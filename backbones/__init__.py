"""Encoders: the only place that loads encoder weights or turns audio into token maps."""
