"""`serve --distributed`: join the group, then lead it (rank 0) or follow (every other rank)."""

from __future__ import annotations

import logging

from mlx_manager.config import DistributedConfig
from mlx_manager.distributed.follower import Follower
from mlx_manager.distributed.group import default_host, join
from mlx_manager.distributed.leader import GroupLeader

log = logging.getLogger(__name__)


def join_group(config: DistributedConfig, model_id: str) -> GroupLeader | Follower:
    """This rank's role, once every rank has joined rank 0's step channel."""
    group = join(config.backend)
    log.info("rank %d of %d (backend %s)", group.rank(), group.size(), config.backend)
    if group.rank() != 0:
        return Follower.join(group, config.timeout_s)
    leader = GroupLeader(group, model_id, config.timeout_s)
    leader.connect(config.host or default_host(), config.port)
    return leader
