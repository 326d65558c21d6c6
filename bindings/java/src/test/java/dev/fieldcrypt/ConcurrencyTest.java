package dev.fieldcrypt;

import static dev.fieldcrypt.Fixtures.customer;
import static dev.fieldcrypt.Fixtures.headers;
import static dev.fieldcrypt.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** One codec shared by many threads, as the binding recommends. */
class ConcurrencyTest {
    static final int THREADS = 8;
    static final int RECORDS = 1000;

    @Test
    @Timeout(120)
    void manyThreadsOnOneCodec() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try (Codec codec = Fixtures.codec()) {
            List<Future<List<Record>>> sealedBy = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int thread = t;
                sealedBy.add(pool.submit(() -> {
                    List<Record> sealed = new ArrayList<>();
                    for (int i = 0; i < RECORDS; i++) {
                        sealed.add(codec.encrypt("customers", utf8(thread + "/" + i),
                                customer("t" + thread, "pw-" + thread + "-" + i), headers("i", "" + i)));
                    }
                    return sealed;
                }));
            }
            // Decrypt on other threads than the ones that encrypted (thread t's records on t+1).
            List<Future<Integer>> checks = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int thread = t;
                List<Record> sealed = sealedBy.get((t + 1) % THREADS).get();
                int owner = (t + 1) % THREADS;
                checks.add(pool.submit(() -> {
                    for (int i = 0; i < RECORDS; i++) {
                        Record opened = codec.decrypt("customers", sealed.get(i));
                        assertEquals(new Record(utf8(owner + "/" + i), customer("t" + owner, "pw-" + owner + "-" + i),
                                headers("i", "" + i)), opened, "thread " + thread + " record " + i);
                    }
                    return RECORDS;
                }));
            }
            int total = 0;
            for (Future<Integer> f : checks) {
                total += f.get();
            }
            assertEquals(THREADS * RECORDS, total);
            Stats s = codec.stats();
            assertEquals(THREADS * RECORDS, s.recordsEncrypted());
            assertEquals(THREADS * RECORDS, s.recordsDecrypted());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    @Timeout(60)
    void closeWhileInUseNeverCrashes() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        AtomicInteger ok = new AtomicInteger();
        AtomicInteger closed = new AtomicInteger();
        try {
            Codec codec = Fixtures.codec();
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                fs.add(pool.submit(() -> {
                    for (int i = 0; i < 100_000; i++) {
                        try {
                            codec.decrypt("customers", codec.encrypt("customers", null, customer("a", "b"), null));
                            ok.incrementAndGet();
                        } catch (IllegalStateException e) {
                            closed.incrementAndGet();
                            return;
                        }
                    }
                }));
            }
            while (ok.get() < 200) {
                Thread.onSpinWait();
            }
            codec.close();
            for (Future<?> f : fs) {
                f.get();
            }
            assertTrue(closed.get() > 0, "the threads saw the close");
        } finally {
            pool.shutdownNow();
            pool.awaitTermination(10, TimeUnit.SECONDS);
        }
    }
}
