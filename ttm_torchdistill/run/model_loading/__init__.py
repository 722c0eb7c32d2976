"""The run's models: which class builds a ``models.<name>`` entry, building it, and loading its weights strictly."""
