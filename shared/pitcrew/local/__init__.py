"""The local runtime: template.yaml's stack on an embedded AWS emulator, functions in-process."""
