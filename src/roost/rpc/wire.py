"""What a gRPC service built outside this package needs: the generated messages and stubs,
and the conversions between store records and their protobuf messages.

The harness service (``roost.platform``) is served with roost's RPC machinery but lives with
the platform it fronts; it uses these instead of the package's private modules.
"""

from roost.rpc._convert import (
    agent_from_pb,
    agent_to_pb,
    branch_from_pb,
    branch_to_pb,
    capability_from_pb,
    capability_to_pb,
    dumps_json,
    loads_json,
    model_from_pb,
    model_to_pb,
    node_from_pb,
    node_to_pb,
    opt,
    session_from_pb,
    session_to_pb,
    worker_from_pb,
    worker_to_pb,
)
from roost.rpc._gen import common_pb2, harness_pb2, harness_pb2_grpc
from roost.rpc._service import Context

__all__ = [
    "Context",
    "agent_from_pb",
    "agent_to_pb",
    "branch_from_pb",
    "branch_to_pb",
    "capability_from_pb",
    "capability_to_pb",
    "common_pb2",
    "dumps_json",
    "harness_pb2",
    "harness_pb2_grpc",
    "loads_json",
    "model_from_pb",
    "model_to_pb",
    "node_from_pb",
    "node_to_pb",
    "opt",
    "session_from_pb",
    "session_to_pb",
    "worker_from_pb",
    "worker_to_pb",
]
