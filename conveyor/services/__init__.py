"""Services that run beside workers: leader-only chores such as the scheduler."""
