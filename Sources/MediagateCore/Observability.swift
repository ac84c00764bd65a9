import Foundation
import Metrics

/// From a message's commit to its frame queued on this node's sockets
/// (`mediagate_fanout_lag_seconds`): the in-process broker measures it after delivering, the
/// PostgreSQL broker when the notification has come round.
package enum FanoutLag {
    package static func record(since created: Date) {
        let seconds = max(0, Date().timeIntervalSince(created))
        Timer(label: "mediagate_fanout_lag_seconds").recordNanoseconds(Int64(seconds * 1e9))
    }
}
