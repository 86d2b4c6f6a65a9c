"""What can go wrong with a backup, as core errors (the CLI maps them to exit codes)."""

from conveyor.errors import ConveyorError


class BackupError(ConveyorError):
    """A backup could not be taken, or a restore not done: the message says which step failed."""

    code = "BACKUP_FAILED"


class BackupStopped(BackupError):
    """pg_dump or pg_restore was stopped because the job running it was cancelled, timed out
    or its worker shut down; nothing was kept."""

    code = "BACKUP_STOPPED"


class BackupUnreadable(BackupError):
    """The file is not a backup, is damaged or cut short, or its key is not configured."""

    code = "BACKUP_UNREADABLE"


class RestoreRefused(BackupError):
    """The target database holds tables already (restore with force to replace them)."""

    code = "RESTORE_REFUSED"


class VerificationFailed(BackupError):
    """A restored database differs from the backup's manifest, or its audit chain is broken."""

    code = "BACKUP_VERIFICATION_FAILED"
