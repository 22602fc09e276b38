"""Accounts, credentials, the access policy and the audit log."""

from taleweaver.auth.accounts import Accounts
from taleweaver.auth.audit import AuditLog, Verification
from taleweaver.auth.credentials import Credentials
from taleweaver.auth.policy import Action, Decision, Role, Scope, decide, is_loopback, may_see
from taleweaver.auth.principal import LOCAL_USER_ID, Principal

__all__ = [
    "LOCAL_USER_ID",
    "Accounts",
    "Action",
    "AuditLog",
    "Credentials",
    "Decision",
    "Principal",
    "Role",
    "Scope",
    "Verification",
    "decide",
    "is_loopback",
    "may_see",
]
