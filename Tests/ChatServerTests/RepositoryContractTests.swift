import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
@testable import ChatServer
@testable import MediagateCore
import MediagateTestSupport
import MediagateWire
import Testing

/// The database engines behind MediagateCore's repositories.
enum Engine: String, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgresql

    var testDescription: String { rawValue }

    /// A configuration with a fresh, empty database of this engine.
    func configuration(_ adjust: (inout ChatConfiguration) -> Void = { _ in }) async throws -> ChatConfiguration {
        var configuration = try testConfiguration(adjust)
        if self == .postgresql { configuration.database = try await PostgresServer.freshDatabase("repo") }
        return configuration
    }

    func repositories() async throws -> Repositories {
        try await Repositories.open(try await configuration(), logger: Logger(label: "test"))
    }
}

/// One contract, every engine: what each repository promises, checked against SQLite and a real
/// PostgreSQL server the tests start.
@Suite("repositories on every engine")
struct RepositoryContractTests {
    @Test("accounts: names unique ignoring case, logins match exactly", arguments: Engine.allCases)
    func users(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let alice = try #require(try await repositories.users.create(username: "Alice", passwordHash: "h1"))
        #expect(try await repositories.users.create(username: "alice", passwordHash: "h2") == nil)
        #expect(try await repositories.users.credentials(username: "Alice")?.1 == "h1")
        #expect(try await repositories.users.credentials(username: "alice") == nil)
        #expect(try await repositories.users.user(id: alice.id) == alice)
        #expect(try await repositories.users.user(username: "ALICE") == alice)
    }

    @Test("refresh tokens: rotation, a replay within grace gets the same successor, reuse after it revokes the family",
          arguments: Engine.allCases)
    func refreshTokens(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let user = try #require(try await repositories.users.create(username: "u", passwordHash: "h"))
        let tokens = repositories.refreshTokens, now = Date()
        try await tokens.insert(tokenHash: "t1", userId: user.id, family: "f", expiresAt: now.addingTimeInterval(60))
        let sealed = Data([1, 2, 3])
        #expect(try await tokens.rotate(tokenHash: "t1", newTokenHash: "t2", sealedSuccessor: sealed, newExpiresAt: now.addingTimeInterval(60),
                                        grace: 10, now: now) == .rotated(userId: user.id, family: "f"))
        #expect(try await tokens.rotate(tokenHash: "t1", newTokenHash: "t3", sealedSuccessor: Data(), newExpiresAt: now, grace: 10,
                                        now: now.addingTimeInterval(5)) == .replayed(userId: user.id, family: "f", sealedSuccessor: sealed))
        #expect(try await tokens.rotate(tokenHash: "t1", newTokenHash: "t4", sealedSuccessor: Data(), newExpiresAt: now, grace: 10,
                                        now: now.addingTimeInterval(30)) == .reused(family: "f"))
        #expect(try await tokens.rotate(tokenHash: "t2", newTokenHash: "t5", sealedSuccessor: Data(), newExpiresAt: now, grace: 10,
                                        now: now.addingTimeInterval(31)) == .revoked)
        #expect(try await tokens.rotate(tokenHash: "nope", newTokenHash: "t6", sealedSuccessor: Data(), newExpiresAt: now, grace: 10,
                                        now: now) == .unknown)
        #expect(try await tokens.families(revokedSince: now) == ["f"])
        try await tokens.insert(tokenHash: "g1", userId: user.id, family: "g", expiresAt: now.addingTimeInterval(60))
        #expect(try await tokens.revokeFamily(of: "g1", userId: user.id + 1, now: now) == nil)
        #expect(try await tokens.revokeFamily(of: "g1", userId: user.id, now: now) == "g")
    }

    @Test("rooms, members, messages, read markers and reactions", arguments: Engine.allCases)
    func chat(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let alice = try #require(try await repositories.users.create(username: "alice", passwordHash: "h"))
        let bob = try #require(try await repositories.users.create(username: "bob", passwordHash: "h"))
        let rooms = repositories.rooms, messages = repositories.messages
        let room = try await rooms.create(name: "general", isPrivate: false, creator: alice.id, members: [])
        #expect(try await rooms.room(id: room.id)?.name == "general")
        #expect(try await rooms.isMember(roomId: room.id, userId: alice.id))
        #expect(try await !rooms.isMember(roomId: room.id, userId: bob.id))

        let attachment = Attachment(type: .image, filename: "p.jpg", size: 3, mimeType: "image/jpeg", width: 4, height: 3)
        let (first, isNew) = try await messages.insert(roomId: room.id, sender: alice, content: "hi", clientId: "c1",
                                                       attachment: attachment, fileId: "file1", now: Date())
        #expect(isNew && first.attachment == attachment && first.senderName == "alice")
        let (again, againNew) = try await messages.insert(roomId: room.id, sender: alice, content: "hi", clientId: "c1",
                                                          attachment: nil, fileId: nil, now: Date())
        #expect(!againNew && again.id == first.id && again.attachment == attachment)
        // A new member has read the history already; what follows is unread.
        #expect(try await rooms.addMember(roomId: room.id, userId: bob.id))
        #expect(try await !rooms.addMember(roomId: room.id, userId: bob.id))
        for n in 0..<3 {
            _ = try await messages.insert(roomId: room.id, sender: alice, content: "m\(n)", clientId: nil, attachment: nil, fileId: nil, now: Date())
        }
        let summary = try #require(try await rooms.summaries(userId: bob.id).first)
        #expect(summary.isMember && summary.memberCount == 2 && summary.unreadCount == 3 && summary.lastMessage?.content == "m2")
        let page = try await messages.history(roomId: room.id, before: nil, limit: 2)
        #expect(page.map(\.content) == ["m2", "m1"])
        #expect(try await messages.history(roomId: room.id, before: page[1].id, limit: 10).map(\.content) == ["m0", "hi"])
        #expect(try await rooms.markRead(roomId: room.id, userId: bob.id, messageId: page[1].id) == page[1].id)
        #expect(try await rooms.markRead(roomId: room.id, userId: bob.id, messageId: first.id) == page[1].id) // never back
        let all = try await rooms.markAllRead(roomId: room.id, userId: bob.id)
        #expect(all.count == 1 && all.newest == page[0].id)
        #expect(try await rooms.members(roomId: room.id).map(\.username) == ["alice", "bob"])

        let reactions = repositories.reactions
        #expect(try await reactions.set(messageId: first.id, userId: bob.id, type: "👍", now: Date()).changed)
        #expect(try await !reactions.set(messageId: first.id, userId: bob.id, type: "👍", now: Date()).changed)
        #expect(try await reactions.set(messageId: first.id, userId: bob.id, type: "😂", now: Date()).0.type == "😂")
        _ = try await reactions.set(messageId: first.id, userId: alice.id, type: "😂", now: Date())
        #expect(try await reactions.summaries(messageIds: [first.id])[first.id] == [ReactionGroup(type: "😂", usernames: ["bob", "alice"])])
        #expect(try await reactions.remove(messageId: first.id, userId: bob.id)?.type == "😂")
        #expect(try await reactions.remove(messageId: first.id, userId: bob.id) == nil)

        let secret = try await rooms.create(name: "secret", isPrivate: true, creator: alice.id, members: [])
        #expect(try await !rooms.summaries(userId: bob.id).contains { $0.room.id == secret.id })
        #expect(try await rooms.removeMember(roomId: room.id, userId: bob.id))
    }

    @Test("uploads and files: quota and open-upload limits, completion queues one job, expiry, readers", arguments: Engine.allCases)
    func uploadsAndFiles(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let alice = try #require(try await repositories.users.create(username: "alice", passwordHash: "h"))
        let bob = try #require(try await repositories.users.create(username: "bob", passwordHash: "h"))
        let uploads = repositories.uploads, now = Date()
        func record(_ id: String, _ length: Int64?, expires: TimeInterval = 60) -> UploadRecord {
            UploadRecord(id: id, userId: alice.id, length: length, offset: 0, metadata: "filename cC5qcGc=", createdAt: now,
                         expiresAt: now.addingTimeInterval(expires))
        }
        #expect(try await uploads.create(record("a", 60), quota: 100, maxOpen: 2) == .created)
        #expect(try await uploads.create(record("b", 50), quota: 100, maxOpen: 2) == .overQuota)
        #expect(try await uploads.create(record("c", nil), quota: 100, maxOpen: 2) == .created)
        #expect(try await uploads.create(record("d", 1), quota: 100, maxOpen: 2) == .tooManyOpen)
        #expect(try await uploads.bytesInUse(userId: alice.id, at: now) == 60)
        try await uploads.advance(id: "a", to: 60, length: nil, completedAt: now, processing: ProcessingJob(uploadId: "a", contentSHA256: "ab"))
        let upload = try #require(try await uploads.upload(id: "a"))
        #expect(upload.offset == 60 && upload.completedAt != nil && upload.metadata == "filename cC5qcGc=")
        let job = try #require(try await repositories.jobs.claim(owner: "n1", lease: 30, now: now))
        #expect(job.job == ProcessingJob(uploadId: "a", contentSHA256: "ab") && job.attempts == 1)
        #expect(try await repositories.jobs.claim(owner: "n2", lease: 30, now: now) == nil)
        try await repositories.jobs.retry(job.id, at: now.addingTimeInterval(5), error: "boom")
        #expect(try await repositories.jobs.depth(now: now).queued == 1)
        #expect(try await repositories.jobs.claim(owner: "n2", lease: 30, now: now.addingTimeInterval(6))?.attempts == 2)

        let file = StoredFile(id: "f1", publicName: "abc.jpg", uploadId: "a", ownerId: alice.id, sha256: String(repeating: "0", count: 64),
                              size: 60, attachment: Attachment(type: .image, filename: "p.jpg"), errorCode: nil)
        try await repositories.files.insert(file, createdAt: now)
        try await uploads.setFile(uploadId: "a", fileId: "f1")
        #expect(try await repositories.files.file(id: "f1") == file)
        #expect(try await repositories.files.file(publicName: "abc.jpg") == file)
        #expect(try await repositories.files.canRead(fileId: "f1", userId: alice.id))
        #expect(try await !repositories.files.canRead(fileId: "f1", userId: bob.id))
        #expect(try await repositories.files.allSHA256() == [file.sha256])
        #expect(try await uploads.bytesInUse(userId: alice.id, at: now) == 60) // the file, not the upload too

        #expect(try await uploads.expired(at: now.addingTimeInterval(61)) == ["c"])
        try await uploads.delete(id: "c")
        try await uploads.reject(uploadId: "a", code: "corrupt")
        #expect(try await uploads.upload(id: "a")?.rejection == "corrupt")
        #expect(try await uploads.upload(id: "c") == nil)
    }

    @Test("writer fences: each new writer gets a higher one, and an offset is stored only under the latest, with its store state",
          arguments: Engine.allCases)
    func writerFences(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let alice = try #require(try await repositories.users.create(username: "alice", passwordHash: "h"))
        let uploads = repositories.uploads, now = Date()
        _ = try await uploads.create(UploadRecord(id: "u", userId: alice.id, length: 10, offset: 0, metadata: nil, createdAt: now,
                                                  expiresAt: now.addingTimeInterval(60)), quota: nil, maxOpen: nil)
        #expect(try await uploads.writerFence(id: "u") == 0)
        let first = try #require(try await uploads.takeWriter(id: "u"))
        let second = try #require(try await uploads.takeWriter(id: "u"))
        let current = try await uploads.writerFence(id: "u")
        #expect(second == first + 1 && current == second)
        #expect(try await uploads.takeWriter(id: "nope") == nil)
        // The writer taken over stores nothing: neither offset nor state.
        let stale = try await uploads.advance(id: "u", to: 4, length: nil, completedAt: nil, processing: nil, storeState: "old", ifWriter: first)
        #expect(!stale)
        #expect(try await uploads.advance(id: "u", to: 6, length: nil, completedAt: nil, processing: nil, storeState: "new", ifWriter: second))
        var record = try #require(try await uploads.upload(id: "u"))
        #expect(record.offset == 6 && record.storeState == "new")
        // Without a state the stored one stays; without a fence whoever writes stores.
        #expect(try await uploads.advance(id: "u", to: 8, length: nil, completedAt: nil, processing: nil, storeState: nil, ifWriter: nil))
        record = try #require(try await uploads.upload(id: "u"))
        #expect(record.offset == 8 && record.storeState == "new")
    }

    @Test("parallel creations from many tasks cannot overrun the quota together", arguments: Engine.allCases)
    func quotaRace(_ engine: Engine) async throws {
        let repositories = try await engine.repositories()
        defer { repositories.close() }
        let alice = try #require(try await repositories.users.create(username: "alice", passwordHash: "h"))
        let now = Date()
        let outcomes = try await withThrowingTaskGroup(of: UploadCreation.self) { group in
            for n in 0..<40 {
                group.addTask {
                    try await repositories.uploads.create(UploadRecord(id: "u\(n)", userId: alice.id, length: 10, offset: 0, metadata: nil,
                                                                       createdAt: now, expiresAt: now.addingTimeInterval(60)),
                                                          quota: 50, maxOpen: nil)
                }
            }
            return try await group.reduce(into: [UploadCreation]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .created }.count == 5)
    }

    @Test("signing keys: every node asking gets the same key", arguments: Engine.allCases)
    func signingKeys(_ engine: Engine) async throws {
        let configuration = try await engine.configuration()
        let one = try await Repositories.open(configuration, logger: Logger(label: "one"))
        let two = try await Repositories.open(configuration, logger: Logger(label: "two"))
        defer { one.close(); two.close() }
        let key = try await one.signingKeys.key(named: "jwt-signing-key")
        #expect(key.count == 64)
        #expect(try await two.signingKeys.key(named: "jwt-signing-key") == key)
        #expect(try await two.signingKeys.existingKey(named: "url-signing-key.previous") == nil)
    }

    @Test("the gateway on PostgreSQL: log in, a room, a message, a tus upload processed into a file")
    func gatewayOnPostgres() async throws {
        let configuration = try await Engine.postgresql.configuration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.call(.post, "/api/rooms", token: alice.access, json: ["name": "general"])
            #expect(room.status == .created || room.status == .ok)
            let roomId = try #require(room.object["id"] as? Int)
            let photo = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")))
            let fileId = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "p.jpg")
            let posted = try await client.call(.post, "/api/messages", token: alice.access,
                                               json: ["room_id": roomId, "content": "look", "attachment": ["file_id": fileId]])
            #expect(posted.status == .created || posted.status == .ok, "\(posted.body)")
            let history = try await client.call(.get, "/api/messages?room_id=\(roomId)", token: alice.access)
            #expect(history.status == .ok && "\(history.body)".contains("look"))
        }
    }
}
