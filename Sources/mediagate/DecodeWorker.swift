import ArgumentParser
import Foundation
import MediaPipeline

/// `mediagate decode-worker JOB ANSWER MEMORY`: decodes one file for `mediagate serve`, in a
/// process of its own that the server kills at the time limit (see `DecodeWorkerProcess`).
/// Not for people: the job and the answer are JSON files the server writes and reads.
struct DecodeWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode-worker",
        abstract: "Decode one file for the server, in a process it can kill (internal).",
        shouldDisplay: false)

    @Argument var job: String
    @Argument var answer: String
    @Argument var memoryLimitBytes: Int

    func run() throws {
        let status = DecodeWorkerMain.run(jobPath: job, answerPath: answer, memoryLimitBytes: memoryLimitBytes)
        if status != 0 { throw ExitCode(status) }
    }
}
