"""Built-in demo data in the on-disk formats real data uses."""
