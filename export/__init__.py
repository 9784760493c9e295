"""crsnn.export."""
