"""InterCode-SQL support: the MariaDB server (`server`), the read-only sandbox agents query through
(`sandbox`, `statements`), tasks and the split (`tasks`), the reward (`reward`), action text (`actions`) and
expert trajectories (`expert`). The environment itself is `hpl.intercode.env`; docs/intercode_sql.md
explains the whole."""
