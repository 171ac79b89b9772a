"""The bodies of the symbol and portfolio layers: read (storage), compute (calc), write (storage).

No Dagster here: the assets in `defs/` call these and turn their results into metadata.
"""
