"""crsnn.models."""
