// swift-tools-version: 6.1
import PackageDescription

// mediagate: a media processing and upload gateway for real-time chat.
//
// Layering (see Docs/ARCHITECTURE.md):
//   C<Lib>        one system-library target per C library, found by pkg-config
//   C<Lib>Shim    fixed-argument C wrappers for what Swift cannot call (variadics, macros)
//   MediagateWire the JSON and protocol vocabulary server and clients share (Attachment, messages, tus)
//   MediaPipeline file in, Attachment out; knows nothing of HTTP
//   MediagateCore the domain: services and the storage protocols they need; no HTTP, no SQL
//   MediagateSQLite, MediagatePostgres, MediagateDiskStorage, MediagateS3  storage backends behind MediagateCore's protocols
//   ChatServer    the HTTP and WebSocket layer (Hummingbird) over MediagateCore
//   MediagateClient the tus/chat client on libcurl; never links libvips or FFmpeg
//   mediagate     the command-line tool; parses arguments and calls the libraries
let package = Package(
    name: "mediagate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mediagate", targets: ["mediagate"]),
        .library(name: "MediaPipeline", targets: ["MediaPipeline"]),
        .library(name: "MediagateClient", targets: ["MediagateClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(
            name: "CMagic",
            pkgConfig: "libmagic",
            providers: [.apt(["libmagic-dev"])]
        ),
        .systemLibrary(
            name: "CVips",
            pkgConfig: "vips",
            providers: [.apt(["libvips-dev"])]
        ),
        // The FFmpeg libraries share their cflags; the modulemap links all four.
        .systemLibrary(
            name: "CFFmpeg",
            pkgConfig: "libavformat",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev", "libswscale-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // The shims name their libraries themselves: a modulemap's `link` lines only reach the
        // linker through a Swift module that imports it.
        .target(
            name: "CVipsShim",
            dependencies: ["CVips"],
            linkerSettings: [.linkedLibrary("vips"), .linkedLibrary("gobject-2.0"), .linkedLibrary("glib-2.0")]
        ),
        .target(
            name: "CFFmpegShim",
            dependencies: ["CFFmpeg"],
            linkerSettings: [
                .linkedLibrary("avformat"), .linkedLibrary("avcodec"),
                .linkedLibrary("avutil"), .linkedLibrary("swscale"),
            ]
        ),

        .target(name: "CCurlShim", dependencies: ["CCurl"], linkerSettings: [.linkedLibrary("curl")]),

        // MARK: Swift libraries
        // The wire vocabulary: Foundation only, so any client can compile it.
        .target(name: "MediagateWire"),
        .target(
            name: "MediaPipeline",
            dependencies: [
                "MediagateWire", "CMagic", "CVips", "CVipsShim", "CFFmpeg", "CFFmpegShim",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),

        // The domain: chat, uploads, files, policy; the repository and store protocols.
        .target(
            name: "MediagateCore",
            dependencies: [
                "MediagateWire", "MediaPipeline",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Storage backends: the embedded database, and blobs and uploads on local disk.
        .target(
            name: "MediagateSQLite",
            dependencies: ["MediagateCore", "MediagateWire", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        // The shared database for many nodes.
        .target(
            name: "MediagatePostgres",
            dependencies: [
                "MediagateCore", "MediagateWire",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "MediagateDiskStorage",
            dependencies: [
                "MediagateCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Blobs in S3-compatible object storage, shared by every node: AWS Signature V4 and
        // the S3 calls over AsyncHTTPClient (the mirror has no S3 SDK).
        .target(
            name: "MediagateS3",
            dependencies: [
                "MediagateCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The upload client: tus 1.0 with retries and resume, login and posting, on libcurl.
        .target(
            name: "MediagateClient",
            dependencies: ["MediagateWire", "CCurl", "CCurlShim", .product(name: "Crypto", package: "swift-crypto")]
        ),

        // The gateway's HTTP and WebSocket layer: routes, authentication, error mapping.
        .target(
            name: "ChatServer",
            dependencies: [
                "MediaPipeline", "MediagateWire", "MediagateCore", "MediagateSQLite", "MediagatePostgres", "MediagateDiskStorage", "MediagateS3",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        // MARK: Executable
        .executableTarget(
            name: "mediagate",
            dependencies: [
                "MediaPipeline", "MediagateWire", "MediagateCore", "ChatServer", "MediagateClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // MARK: Tests
        // Helpers the test targets share: fixture paths, running the independent tools.
        .target(name: "MediagateTestSupport", dependencies: ["MediaPipeline"], path: "Tests/Support"),
        .testTarget(name: "MediaPipelineTests", dependencies: ["MediaPipeline", "MediagateWire", "MediagateTestSupport"]),
        .testTarget(
            name: "MediagateCLITests",
            dependencies: ["mediagate", "MediaPipeline", "MediagateWire", "MediagateClient", "MediagateTestSupport",
                           .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "ChatServerTests",
            dependencies: [
                "ChatServer", "MediagateCore", "MediagateSQLite", "MediagatePostgres", "MediagateDiskStorage", "MediagateS3", "MediagateWire", "MediaPipeline",
                "MediagateTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            ]
        ),
        // The seed app's wire contract: its models, its calls, against a live gateway.
        .testTarget(
            name: "AppContractTests",
            dependencies: [
                "ChatServer", "MediagateCore", "MediagateTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
