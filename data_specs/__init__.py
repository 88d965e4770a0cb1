"""The artifact contracts every layer shares: kinds, manifests, on-disk layouts and user errors.

Nothing here knows about models, the CLI or the stages; it only says what a directory written by
a famevil stage must contain and how to tell one artifact from another.
"""
