"""YAML configs shipped with the package as `medprompt.configs`: datasets, training recipe."""
