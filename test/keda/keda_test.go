// Package keda_test shows, against the real KEDA operator on the local control plane and
// real PostgreSQL, MariaDB and Redis, that the ScaledObjects Skipper relies on take a
// Deployment from 0 to 1 replica when events appear and back to 0 when they are done.
package keda_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/getkipper/skipper/test/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// source is one event source: how to make events pending, how to finish them, and the
// KEDA trigger that counts them.
type source struct {
	secret   map[string]string // the connection, as the TriggerAuthentication reads it
	trigger  func(table string) kedav1alpha1.ScaleTriggers
	setup    func(t *testing.T, table string)
	add      func(t *testing.T, table string, n int)
	finish   func(t *testing.T, table string)
	authKeys map[string]string // trigger auth parameter -> secret key
}

func TestScaleFromZeroAndBack(t *testing.T) {
	pg := testenv.OpenDB(t, "pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	my := testenv.OpenDB(t, "mysql", "root@tcp(127.0.0.1:3306)/test")
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379 is required: %v", err)
	}

	sqlSource := func(db *sql.DB, kind, secretKey, conn string, trig func(table string) map[string]string) source {
		return source{
			secret:   map[string]string{"url": conn},
			authKeys: map[string]string{secretKey: "url"},
			trigger: func(table string) kedav1alpha1.ScaleTriggers {
				return kedav1alpha1.ScaleTriggers{Type: kind, Metadata: trig(table), AuthenticationRef: &kedav1alpha1.AuthenticationRef{Name: "source"}}
			},
			setup: func(t *testing.T, table string) {
				testenv.ExecSQL(t, db, fmt.Sprintf("CREATE TABLE %s (id INT PRIMARY KEY, status VARCHAR(16) NOT NULL)", table))
				t.Cleanup(func() { _, _ = db.Exec("DROP TABLE " + table) })
			},
			add: func(t *testing.T, table string, n int) {
				for i := 1; i <= n; i++ {
					testenv.ExecSQL(t, db, fmt.Sprintf("INSERT INTO %s (id, status) VALUES (%d, 'pending')", table, i))
				}
			},
			finish: func(t *testing.T, table string) {
				testenv.ExecSQL(t, db, fmt.Sprintf("UPDATE %s SET status = 'done'", table))
			},
		}
	}
	cases := map[string]source{
		"postgresql": sqlSource(pg, "postgresql", "connection", "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable",
			func(table string) map[string]string {
				return map[string]string{
					"query":                      fmt.Sprintf("SELECT count(*) FROM %s WHERE status = 'pending'", table),
					"targetQueryValue":           "1",
					"activationTargetQueryValue": "0",
				}
			}),
		"mysql": sqlSource(my, "mysql", "connectionString", "root@tcp(127.0.0.1:3306)/test",
			func(table string) map[string]string {
				return map[string]string{
					"query":                fmt.Sprintf("SELECT count(*) FROM %s WHERE status = 'pending'", table),
					"queryValue":           "1",
					"activationQueryValue": "0",
				}
			}),
		"redis": {
			secret:   map[string]string{"address": "127.0.0.1:6379"},
			authKeys: map[string]string{"address": "address"},
			trigger: func(list string) kedav1alpha1.ScaleTriggers {
				return kedav1alpha1.ScaleTriggers{Type: "redis", AuthenticationRef: &kedav1alpha1.AuthenticationRef{Name: "source"},
					Metadata: map[string]string{"listName": list, "listLength": "1", "activationListLength": "0"}}
			},
			setup: func(t *testing.T, list string) {
				t.Cleanup(func() { rdb.Del(context.Background(), list) })
			},
			add: func(t *testing.T, list string, n int) {
				for i := 0; i < n; i++ {
					if err := rdb.RPush(context.Background(), list, fmt.Sprintf(`{"n":%d}`, i)).Err(); err != nil {
						t.Fatal(err)
					}
				}
			},
			finish: func(t *testing.T, list string) {
				if err := rdb.Del(context.Background(), list).Err(); err != nil {
					t.Fatal(err)
				}
			},
		},
	}

	testenv.KEDA(t)
	c := testenv.Client(t)
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := testenv.Namespace(t)
			table := fmt.Sprintf("keda_%s_%04x", name, rand.IntN(0x10000))
			src.setup(t, table)

			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "source", Namespace: ns}, StringData: src.secret}
			var params []kedav1alpha1.AuthSecretTargetRef
			for param, key := range src.authKeys {
				params = append(params, kedav1alpha1.AuthSecretTargetRef{Parameter: param, Name: "source", Key: key})
			}
			auth := &kedav1alpha1.TriggerAuthentication{
				ObjectMeta: metav1.ObjectMeta{Name: "source", Namespace: ns},
				Spec:       kedav1alpha1.TriggerAuthenticationSpec{SecretTargetRef: params},
			}
			dep := deployment(ns, "fn")
			so := &kedav1alpha1.ScaledObject{
				ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: ns},
				Spec: kedav1alpha1.ScaledObjectSpec{
					ScaleTargetRef:  &kedav1alpha1.ScaleTarget{Name: "fn"},
					MinReplicaCount: ptr.To[int32](0),
					MaxReplicaCount: ptr.To[int32](1),
					PollingInterval: ptr.To[int32](1),
					CooldownPeriod:  ptr.To[int32](3),
					Triggers:        []kedav1alpha1.ScaleTriggers{src.trigger(table)},
				},
			}
			for _, obj := range []client.Object{secret, auth, dep, so} {
				if err := c.Create(ctx, obj); err != nil {
					t.Fatalf("create %T: %v", obj, err)
				}
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), so) })

			testenv.Eventually(t, time.Minute, "ScaledObject Ready", func() (bool, error) {
				got := &kedav1alpha1.ScaledObject{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(so), got); err != nil {
					return false, err
				}
				ready := got.Status.Conditions.GetReadyCondition()
				return got.Status.Conditions.AreInitialized() && ready.IsTrue(), fmt.Errorf("conditions %+v", got.Status.Conditions)
			})
			assertReplicas(t, c, dep, 0, 5*time.Second)

			src.add(t, table, 3)
			testenv.WaitReplicas(t, c, dep, 1, 90*time.Second)
			testenv.Eventually(t, time.Minute, "a Running pod of the woken function", func() (bool, error) {
				pods := &corev1.PodList{}
				if err := c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "fn"}); err != nil {
					return false, err
				}
				for _, p := range pods.Items {
					if p.Status.Phase == corev1.PodRunning {
						return true, nil
					}
				}
				return false, fmt.Errorf("%d pods, none Running", len(pods.Items))
			})

			src.finish(t, table)
			testenv.WaitReplicas(t, c, dep, 0, 90*time.Second)
		})
	}
}

func deployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "fn", Image: "example.invalid/fn:1"}}},
			},
		},
	}
}

// assertReplicas checks that the Deployment stays at want for the whole window: KEDA must
// not wake a function that has no events.
func assertReplicas(t *testing.T, c client.Client, dep *appsv1.Deployment, want int32, window time.Duration) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		got := &appsv1.Deployment{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(dep), got); err != nil {
			t.Fatal(err)
		}
		if r := ptr.Deref(got.Spec.Replicas, 1); r != want {
			t.Fatalf("Deployment %s went to %d replicas with no events", dep.Name, r)
		}
		<-time.After(500 * time.Millisecond)
	}
}
