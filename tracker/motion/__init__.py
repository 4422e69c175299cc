"""Human motion: procedural generator, readers and importers (AMASS layout)."""
