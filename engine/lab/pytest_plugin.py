"""pytest plugin with the lab fixtures (placeholder)."""
