"""The LFADS side of the package (needs torch): configs, data loading, the model (`model/`),
training (the loop in `training`, its state and files in `checkpoint`, the schedules in
`schedules`), posterior sampling and device selection."""
