"""The soak: the SDK's workers on every runtime calling each other for minutes while
the engine is dropped, restarted and killed; every call must end in exactly one
outcome and nothing may leak.  ``python -m soak --help``; ``soak/README.md``.
"""
