"""Actor options: retries, backoff, priority, time limit and queue name.

Seed section "3. 配置选项" with ``dramatiq`` replaced by ``liteq``::

    python actor_options.py

All durations are milliseconds, as in Dramatiq. ``priority``: a larger number runs
first (as in the seed and in RabbitMQ; Dramatiq itself runs lower numbers first).
The first attempt at video 42 fails on purpose, so you can watch ``max_retries`` and
``min_backoff`` at work. ``LITEQ_EXAMPLE_SPEED=100`` makes the backoff 100x shorter.
"""

import os

import liteq

#: LITEQ_EXAMPLE_SPEED=N runs the example N times faster (the tests use 100).
SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))

attempts = {}


@liteq.actor(
    max_retries=3,        # 最多重试3次
    min_backoff=int(1000 / SPEED),     # 最小重试间隔1秒（毫秒）
    priority=10,          # 优先级（数字越大优先级越高）
    time_limit=300000,    # 超时时间5分钟（毫秒）
    queue_name="high_priority"  # 指定队列名称
)
def process_video(video_id):
    # 处理视频的长时间任务
    attempts[video_id] = attempts.get(video_id, 0) + 1
    print(f"Processing video {video_id} (attempt {attempts[video_id]})")
    if attempts[video_id] == 1:
        raise ConnectionError("storage not reachable yet; liteq will retry")
    print(f"Video {video_id} processed")


if __name__ == "__main__":
    print(f"actor {process_video.actor_name!r}: queue={process_video.queue_name!r} "
          f"priority={process_video.priority} options={process_video.options}")
    process_video.send(42)

    broker = liteq.get_broker()
    worker = liteq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        broker.join("high_priority", timeout=60000)
    finally:
        worker.stop()
    print(f"video 42 took {attempts[42]} attempts")
