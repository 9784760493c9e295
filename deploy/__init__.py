"""crsnn.deploy."""
