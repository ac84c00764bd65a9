// swift-tools-version: 5.10
// The receiving side of Benchmarks/chat-fanout.py: many WebSocket connections on SwiftNIO, so
// the load client costs a few microseconds per frame and does not distort the latency it
// measures. Built only by the benchmark, never by the project's build or tests.
import PackageDescription

let package = Package(
    name: "FanoutReceiver",
    dependencies: [.package(url: "https://github.com/apple/swift-nio", from: "2.101.2")],
    targets: [
        .executableTarget(
            name: "fanout-receiver",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]
        ),
    ]
)
