"""IKEv2 tasks (model: strongSwan ``sa/ikev2/tasks/``): each builds or
processes its payloads of one message; the session's task manager groups
them into exchanges."""

from .base import Task, TaskStatus
from .child_create import ChildCreate
from .child_delete import ChildDelete
from .child_rekey import ChildRekey
from .ike_auth import IkeAuth
from .ike_config import IkeConfig
from .ike_delete import IkeDelete
from .ike_dpd import IkeDpd, Informational
from .ike_init import IkeInit
from .ike_mobike import IkeMobike
from .ike_natd import IkeNatd
from .ike_rekey import IkeRekey

__all__ = [
    "ChildCreate",
    "ChildDelete",
    "ChildRekey",
    "IkeAuth",
    "IkeConfig",
    "IkeDelete",
    "IkeDpd",
    "IkeInit",
    "IkeMobike",
    "IkeNatd",
    "IkeRekey",
    "Informational",
    "Task",
    "TaskStatus",
]
