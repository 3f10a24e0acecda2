"""Experiment grids: expansion into run directories, executors that train them, the report.

`grid` reads a grid file and expands it into cells (one ordinary run directory each),
`executors` trains the cells that are not complete (here, or as a SLURM job array through
submitit), `report` gathers the cells' results into the paper-style table and figure.
"""

from peft_ser.sweep.grid import Cell, Grid, GridError, load_grid

__all__ = ["Cell", "Grid", "GridError", "load_grid"]
