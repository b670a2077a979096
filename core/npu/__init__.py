"""Arm Ethos-U NPUs: Vela, its numbers and what the hardware costs."""
