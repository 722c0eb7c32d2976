"""Argument checks, in one place: values (:mod:`.values`), tensors (:mod:`.tensors`), and keyword arguments against a
signature (:mod:`.signatures`). Each error says what was expected and what arrived."""
