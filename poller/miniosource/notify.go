package miniosource

import (
	"context"
	"fmt"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/notification"
)

// EnsureNotification makes the bucket send object puts and deletes to the notify_redis
// target arn (arn:minio:sqs::<ID>:redis). It is idempotent: an existing matching queue
// configuration is left alone.
func EnsureNotification(ctx context.Context, endpoint, accessKey, secretKey, bucket, arn string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("SKIPPER_SOURCE_URL=%q is not a MinIO endpoint: use http://host:port", endpoint)
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(accessKey, secretKey, ""), Secure: u.Scheme == "https"})
	if err != nil {
		return fmt.Errorf("MinIO client for %s: %w", u.Host, err)
	}
	a, err := notification.NewArnFromString(arn)
	if err != nil {
		return fmt.Errorf("SKIPPER_MINIO_ARN=%q: %w (use arn:minio:sqs::<ID>:redis)", arn, err)
	}
	cfg, err := c.GetBucketNotification(ctx, bucket)
	if err != nil {
		return fmt.Errorf("read notification config of bucket %s: %w", bucket, err)
	}
	if hasQueue(cfg, arn) {
		return nil
	}
	q := notification.NewConfig(a)
	q.AddEvents(notification.ObjectCreatedAll, notification.ObjectRemovedAll)
	cfg.AddQueue(q)
	if err := c.SetBucketNotification(ctx, bucket, cfg); err != nil {
		return fmt.Errorf("configure bucket %s to notify %s (is MINIO_NOTIFY_REDIS_ENABLE_<ID>=on set on the MinIO server?): %w", bucket, arn, err)
	}
	return nil
}

// hasQueue reports whether the bucket already sends all puts and deletes, unfiltered, to arn.
// (MinIO refuses a second, overlapping rule, so adding it again would fail.)
func hasQueue(cfg notification.Configuration, arn string) bool {
	created, removed := false, false
	for _, q := range cfg.QueueConfigs {
		if q.Queue != arn || (q.Filter != nil && len(q.Filter.S3Key.FilterRules) > 0) {
			continue
		}
		for _, e := range q.Events {
			switch e {
			case notification.ObjectCreatedAll:
				created = true
			case notification.ObjectRemovedAll:
				removed = true
			}
		}
	}
	return created && removed
}
