"""The parse stage's backends, one module each, and their one list (``registry.PARSERS``).

A backend module (``conllu``, ``stanza``, ``spacy``) turns a corpus shard's units into the
parsed-shard format (``parsed_shard``) and parses a gold treebank's words for ``parse-quality``.
``sasbert.data.parse`` (the ``parse`` CLI) and ``sasbert.data.parse_quality`` load the chosen one
by name through the registry, so a parse job's code is the shared parse code and its own
backend's module: a change to one backend reruns only its parses (docs/extending.md).

This file is in every backend's fingerprint (a subpackage's ``__init__`` runs first): no code.
"""
