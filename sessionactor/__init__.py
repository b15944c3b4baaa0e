"""sessionactor: an asyncio actor that owns typed, constrained, versioned session state."""

from ._frozen import Limits as Limits
from .blocking import BlockingSessionStore as BlockingSessionStore
from .client import RemoteSessionStore as RemoteSessionStore
from .client import connect as connect
from .errors import AtomicUpdateError as AtomicUpdateError
from .errors import AuthenticationFailed as AuthenticationFailed
from .errors import CallTimeout as CallTimeout
from .errors import ConnectionLost as ConnectionLost
from .errors import ConstraintViolation as ConstraintViolation
from .errors import InternalError as InternalError
from .errors import InvalidArgument as InvalidArgument
from .errors import InvalidConstraint as InvalidConstraint
from .errors import InvalidImport as InvalidImport
from .errors import PersistenceError as PersistenceError
from .errors import ProgramNotFound as ProgramNotFound
from .errors import ProtocolError as ProtocolError
from .errors import SessionLimitExceeded as SessionLimitExceeded
from .errors import SessionNotFound as SessionNotFound
from .errors import SessionStoreError as SessionStoreError
from .errors import StoreClosed as StoreClosed
from .errors import UnknownType as UnknownType
from .errors import ValidationError as ValidationError
from .errors import VariableExists as VariableExists
from .errors import VariableLocked as VariableLocked
from .errors import VariableNotFound as VariableNotFound
from .errors import VersionConflict as VersionConflict
from .errors import WatchOverflow as WatchOverflow
from .mirror import Mirror as Mirror
from .model import BatchGet as BatchGet
from .model import Session as Session
from .model import StoreStats as StoreStats
from .model import Variable as Variable
from .model import VariableChange as VariableChange
from .server import SessionServer as SessionServer
from .store import SessionStore as SessionStore
from .types import Tensor as Tensor
from .types import TypeSpec as TypeSpec
from .types import VariableType as VariableType

__all__ = [
    "AtomicUpdateError",
    "AuthenticationFailed",
    "BatchGet",
    "BlockingSessionStore",
    "CallTimeout",
    "ConnectionLost",
    "ConstraintViolation",
    "InternalError",
    "InvalidArgument",
    "InvalidConstraint",
    "InvalidImport",
    "Limits",
    "Mirror",
    "PersistenceError",
    "ProgramNotFound",
    "ProtocolError",
    "RemoteSessionStore",
    "Session",
    "SessionLimitExceeded",
    "SessionNotFound",
    "SessionServer",
    "SessionStore",
    "SessionStoreError",
    "StoreClosed",
    "StoreStats",
    "Tensor",
    "TypeSpec",
    "UnknownType",
    "ValidationError",
    "Variable",
    "VariableChange",
    "VariableExists",
    "VariableLocked",
    "VariableNotFound",
    "VariableType",
    "VersionConflict",
    "WatchOverflow",
    "connect",
]

__version__ = "0.1.0"
