"""Programs the tests run as real processes."""
