"""crsnn.train."""
