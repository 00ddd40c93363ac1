"""The `medprompt` command line: one module per group of verbs, on top of every stage (and the only part that reaches the dataset adapters)."""
