"""Rule types (one per file) that turn events into warnings."""
