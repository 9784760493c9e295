"""crsnn.sim."""
