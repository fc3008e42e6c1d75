"""Who made a request, as the audit log records it: the one place that reads it.

Before accounts a `Principal` has only `subject` (a user name, "static-key", "anonymous"): it
is recorded as the user id, with no key id. With accounts the principal carries `user_id`
and `key_id` (the API key used): those are recorded (as text), and a principal with neither
(the static key, the open loopback default) is recorded by its subject.
"""

from __future__ import annotations

from mlx_manager.security.principal import Principal


def identity(principal: Principal | None) -> tuple[str | None, str | None]:
    """(user id, key id) of the caller; (None, None) when nobody was authenticated."""
    if principal is None:
        return None, None
    user_id = getattr(principal, "user_id", None)
    key_id = getattr(principal, "key_id", None)
    if user_id is None and key_id is None:
        return principal.subject, None
    return _text(user_id), _text(key_id)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
