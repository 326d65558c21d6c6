package dev.fieldcrypt.kafka;

import dev.fieldcrypt.Header;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.header.Headers;

/** Kafka's {@link Headers} to and from the codec's header lists. */
final class KafkaHeaders {
    private KafkaHeaders() {}

    static List<Header> of(Headers headers) {
        List<Header> out = new ArrayList<>();
        if (headers != null) {
            for (org.apache.kafka.common.header.Header h : headers) {
                out.add(new Header(h.key(), h.value()));
            }
        }
        return out;
    }

    /**
     * Makes {@code target} hold {@code after} (the codec's output headers) if they differ from
     * {@code before}: in practice adds the fieldcrypt header (encrypt) or removes it (decrypt).
     * Returns false when they differ and there is no {@code target} to change.
     */
    static boolean update(Headers target, List<Header> before, List<Header> after) {
        if (before.equals(after)) {
            return true;
        }
        if (target == null) {
            return false;
        }
        for (Header h : before) {
            target.remove(h.name());
        }
        for (Header h : after) {
            target.add(h.name(), h.value());
        }
        return true;
    }
}
