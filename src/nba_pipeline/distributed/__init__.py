"""Running the pipeline on a Dask cluster: sweep settings and benchmark repetitions submitted
to a scheduler, and batch preprocessing of large, partitioned inputs."""
