"""Plugins: the hooks they implement, and the manager that loads and calls them."""
