"""Example answers for the OpenAPI description, taken from the seeds' own documents."""

from __future__ import annotations

from typing import Any

JOB_ID = "550e8400-e29b-41d4-a716-446655440000"
TS = "2025-06-15T10:30:00.000Z"


def example(status: int, body: Any, description: str = "") -> dict[int | str, dict[str, Any]]:
    return {status: {"description": description or "example", "content": {"application/json": {"example": body}}}}


CANONICAL_ERROR = {
    "success": False,
    "error": "Job not found",
    "details": {"code": "JOB_NOT_FOUND", "jobId": "invalid-uuid"},
    "timestamp": TS,
}
MONITORING_ERROR = {
    "error": {
        "code": "JOB001",
        "message": "Job not found",
        "field": None,
        "details": {"reason": "JOB_NOT_FOUND", "jobId": JOB_ID},
        "timestamp": TS,
        "request_id": "req_123456",
    }
}

CREATED = {
    "success": True,
    "data": {
        "jobId": JOB_ID,
        "id": JOB_ID,
        "type": "sentiment_analysis_batch",
        "status": "pending",
        "priority": "high",
        "createdAt": TS,
    },
    "timestamp": TS,
}

RUNNING_JOB = {
    "success": True,
    "data": {
        "id": JOB_ID,
        "type": "sentiment_analysis_batch",
        "status": "running",
        "priority": "high",
        "progress": 65.5,
        "createdAt": "2025-06-15T10:30:00.000Z",
        "startedAt": "2025-06-15T10:30:15.000Z",
        "estimatedCompletion": "2025-06-15T10:32:00.000Z",
        "processingStats": {
            "totalItems": 1000,
            "processedItems": 655,
            "failedItems": 5,
            "averageProcessingTime": 45,
            "currentSpeed": "22 items/second",
        },
    },
    "timestamp": TS,
}

LIST = {
    "success": True,
    "data": {
        "jobs": [
            {
                "id": JOB_ID,
                "type": "sentiment_analysis_batch",
                "status": "running",
                "priority": "high",
                "progress": 65.5,
                "createdAt": "2025-06-15T10:30:00.000Z",
                "startedAt": "2025-06-15T10:30:15.000Z",
                "job_id": JOB_ID,
                "job_type": "sentiment_analysis_batch",
                "created_at": "2025-06-15T10:30:00.000Z",
                "priority_level": 8,
                "job_status": "running",
            }
        ],
        "total": 25,
        "page": 1,
        "limit": 50,
    },
    "timestamp": TS,
    "jobs": ["(the same items as data.jobs)"],
    "total_count": 25,
    "page": 1,
    "page_size": 50,
    "has_next": False,
}

CANCELLED = {"success": True, "message": "Job cancelled successfully", "data": {"id": JOB_ID}, "timestamp": TS}
NOT_CANCELLABLE = {
    "success": False,
    "error": "Job not found or cannot be cancelled",
    "details": {"code": "JOB_NOT_CANCELLABLE", "currentStatus": "completed"},
    "timestamp": TS,
}

SUMMARY = {
    "success": True,
    "data": {
        "total": 150,
        "pending": 5,
        "running": 3,
        "completed": 135,
        "failed": 5,
        "cancelled": 2,
        "performance": {
            "averageProcessingTime": 45000,
            "throughput": "25 jobs/minute",
            "successRate": 94.7,
            "peakConcurrency": 5,
        },
        "byType": {"sentiment_analysis_batch": {"total": 80, "completed": 75, "failed": 3, "cancelled": 2}},
        "byPriority": {"critical": 2, "high": 15, "medium": 80, "low": 53},
    },
    "timestamp": TS,
}

WAITED = {
    "success": True,
    "data": {
        "id": JOB_ID,
        "type": "sentiment_analysis_batch",
        "status": "completed",
        "progress": 100,
        "result": {"totalProcessed": 1000},
        "completedAt": "2025-06-15T10:31:45.000Z",
    },
    "timestamp": TS,
}
WAIT_TIMEOUT = {
    "success": False,
    "error": "Job timeout",
    "details": {"code": "JOB_TIMEOUT", "currentStatus": "running", "currentProgress": 65.5},
    "timestamp": TS,
}

LOGS = {
    "success": True,
    "data": {
        "jobId": JOB_ID,
        "logs": [
            {
                "timestamp": "2024-01-15T14:26:00.000Z",
                "level": "info",
                "message": "Executing R calibration script",
                "component": "r_processor",
                "attempt": 1,
            }
        ],
        "total": 1,
        "limit": 100,
        "offset": 0,
    },
    "timestamp": TS,
}

HEALTH = {
    "status": "healthy",
    "database": "healthy",
    "workers": "healthy",
    "redis": "healthy",
    "celery": "healthy",
    "live_workers": 2,
    "queue_stats": {"pending_jobs": 5, "scheduled_jobs": 0, "running_jobs": 3},
    "timestamp": "2024-01-15T14:30:00.000Z",
}

JOB_METRICS = {
    "time_range": "24h",
    "total_jobs": 45,
    "success_rate": 94.4,
    "average_duration_seconds": 127.5,
    "cache_hit_rate": None,
    "error_rate": 5.6,
}

QUEUES = {
    "queues": [
        {
            "name": "default",
            "pending": 12,
            "scheduled": 3,
            "running": 4,
            "completed": 1200,
            "failed": 7,
            "oldest_pending_at": "2025-01-21T09:59:30.000Z",
            "oldest_pending_age_seconds": 30.0,
            "throughput_per_minute": 18.5,
            "completed_last_hour": 1110,
            "failed_last_hour": 2,
            "concurrency": 20,
            "workers": 2,
            "paused": False,
        }
    ],
    "timestamp": "2025-01-21T10:00:00.000Z",
}

PAUSED = {
    "queue": {"name": "reports", "paused": True, "changed_at": "2025-01-21T10:00:00.000Z"},
    "message": "queue reports paused",
    "timestamp": "2025-01-21T10:00:00.000Z",
}

STATISTICS = {
    "total": 150,
    "by_status": {
        "scheduled": 0,
        "pending": 5,
        "running": 3,
        "completed": 135,
        "failed": 5,
        "cancelled": 2,
        "timeout": 0,
    },
    "by_type": {"sentiment_analysis_batch": {"completed": 75, "failed": 3, "cancelled": 2}},
    "by_priority": {"critical": 2, "high": 15, "medium": 80, "low": 53},
    "last_hour": {
        "completed": 40,
        "failed": 1,
        "cancelled": 0,
        "success_rate": 97.6,
        "average_duration_seconds": 45.0,
        "throughput_per_minute": 0.68,
    },
    "last_24h": {
        "completed": 135,
        "failed": 5,
        "cancelled": 2,
        "success_rate": 96.4,
        "average_duration_seconds": 45.0,
        "throughput_per_minute": 0.1,
    },
    "peak_concurrency_last_hour": 5,
    "timestamp": "2025-01-21T10:00:00.000Z",
}

API_KEY = {
    "id": "9f2c4a1b7d3e5f60",
    "name": "nightly exports",
    "role": "user",
    "orgId": "org-a",
    "studyId": None,
    "createdAt": TS,
    "createdBy": "Dr. A. Admin",
    "revokedAt": None,
    "active": True,
}
KEYS = {"success": True, "data": {"keys": [API_KEY]}, "timestamp": TS}
REVOKED = {"success": True, "data": {**API_KEY, "revokedAt": TS, "active": False}, "timestamp": TS}
PROMETHEUS = """# HELP conveyor_jobs Jobs stored
# TYPE conveyor_jobs gauge
conveyor_jobs{queue="default",status="completed",type="sleep"} 135.0
# HELP conveyor_queue_depth Pending jobs per queue
# TYPE conveyor_queue_depth gauge
conveyor_queue_depth{queue="default"} 5.0
"""

SCHEDULE_ID = "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"
SCHEDULE = {
    "id": SCHEDULE_ID,
    "name": "nightly supply check",
    "job_type": "medication.supply_monitor",
    "data": {"facility_id": "ward-7"},
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
    "interval_seconds": None,
    "priority": "high",
    "priority_level": 8,
    "queue": None,
    "enabled": True,
    "missed_policy": "run_once",
    "owner": {"user_id": "u-42", "org_id": "org-a", "study_id": None, "created_by": "Dr. A. Operator"},
    "created_at": TS,
    "updated_at": TS,
    "last_run_at": "2025-06-15T00:00:00.000Z",
    "next_run_at": "2025-06-16T00:00:00.000Z",
}
SCHEDULE_ANSWER = {"schedule": SCHEDULE, "timestamp": TS}
SCHEDULES = {
    "schedules": [SCHEDULE],
    "pagination": {"page": 1, "page_size": 20, "total": 1, "total_pages": 1, "has_next": False},
    "timestamp": TS,
}
SCHEDULE_ERROR = {
    "error": {
        "code": "JOB002",
        "message": "invalid cron '0 25 * * *': [0 25 * * *] is not acceptable, out of range",
        "field": "cron",
        "details": {"reason": "INVALID_SCHEDULE"},
        "timestamp": TS,
        "request_id": "req_123456",
    }
}

AUDIT_RECORD = {
    "seq": 1042,
    "recordedAt": "2026-01-15T10:30:00.123456Z",
    "actorId": "user-17",
    "actorName": "Dr. A. Admin",
    "action": "job.cancelled",
    "objectType": "job",
    "objectId": "0193a8e2-7c41-7b7e-9a51-3f1c2d4e5f60",
    "before": {"status": "pending", "cancelRequested": False},
    "after": {"status": "cancelled", "cancelRequested": False},
    "requestId": "req_8f3a2b1c4d5e6f70",
    "clientAddress": "10.1.2.3",
    "orgId": "org-a",
    "prevHash": "5d41402abc4b2a76b9719d911017c592" * 2,
    "hash": "7d793037a0760186574b0282f2f435e7" * 2,
}
AUDIT_PAGE = {
    "success": True,
    "data": {"records": [AUDIT_RECORD], "total": 1, "page": 1, "pageSize": 50, "hasNext": False},
    "timestamp": TS,
}
AUDIT_VERIFIED = {
    "success": True,
    "data": {
        "ok": False,
        "records": 1041,
        "headSeq": 1041,
        "headHash": AUDIT_RECORD["prevHash"],
        "checkpoints": 1,
        "checkpointsSigned": True,
        "brokenSeq": 1042,
        "problem": "seq 1042: hash mismatch (a field was altered)",
        "warnings": [],
    },
    "timestamp": TS,
}

ME = {
    "success": True,
    "data": {
        "userId": "ada",
        "name": "Ada Lovelace",
        "role": "operator",
        "roles": ["operator"],
        "orgId": "org-a",
        "studyId": None,
        "via": "jwt",
        "superAdmin": False,
        "permissions": [
            "cache:clear", "jobs:create", "jobs:manage", "jobs:read", "jobs:read-sensitive", "metrics:read",
            "queues:manage", "queues:read", "schedules:manage",
        ],
    },
    "timestamp": TS,
}  # fmt: skip

WORKERS = {
    "success": True,
    "data": {
        "workers": [
            {
                "id": "host-1:4242:9f3a1c",
                "hostname": "host-1",
                "pid": 4242,
                "queues": ["default", "reports"],
                "concurrency": 10,
                "running": 3,
                "startedAt": "2026-01-15T08:00:00.000Z",
                "lastSeenAt": "2026-01-15T10:29:58.000Z",
                "lastSeenSecondsAgo": 2.0,
            }
        ],
        "total": 1,
    },
    "timestamp": TS,
}

THROUGHPUT = {
    "success": True,
    "data": {
        "window": "1h",
        "bucketMinutes": 1,
        "buckets": [
            {"start": "2026-01-15T10:28:00.000Z", "completed": 41, "failed": 2, "cancelled": 0, "errorRate": 4.7},
            {"start": "2026-01-15T10:29:00.000Z", "completed": 0, "failed": 0, "cancelled": 0, "errorRate": None},
            {"start": "2026-01-15T10:30:00.000Z", "completed": 12, "failed": 0, "cancelled": 1, "errorRate": 0.0},
        ],
    },
    "timestamp": TS,
}
