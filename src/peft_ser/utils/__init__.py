"""What every layer uses: one-line errors, atomic writes and folder locks, progress, precision,
lazy public names. Imports nothing else of the package."""
