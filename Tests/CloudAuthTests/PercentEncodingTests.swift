import CloudAuth
import Testing

@Suite struct PercentEncodingTests {
    @Test func unreservedCharactersStayAndEveryOtherByteIsUpperCaseHex() {
        #expect(PercentEncoding.encode("AZaz09-._~") == "AZaz09-._~")
        #expect(PercentEncoding.encode("a b+c/d=e&f@g") == "a%20b%2Bc%2Fd%3De%26f%40g")
        #expect(PercentEncoding.encode("é") == "%C3%A9")
        #expect(PercentEncoding.encode("/a b/c", keepingSlash: true) == "/a%20b/c")
    }

    @Test func decodingUndoesEncodingAndLeavesBrokenEscapesAsTheyAre() {
        let text = "x=1&y=a b+c/é%"
        #expect(PercentEncoding.decode(PercentEncoding.encode(text)) == text)
        #expect(PercentEncoding.decode("%2f%2F%zz%4") == "//%zz%4")
        #expect(PercentEncoding.decode("a+b") == "a+b")
        #expect(PercentEncoding.decode("a+b%2B", plusIsSpace: true) == "a b+")
    }

    @Test func formsEncodeBothSidesAndDecodePlusAsSpace() {
        #expect(FormEncoding.encode([("a b", "c&d"), ("e", "")]) == "a%20b=c%26d&e=")
        let decoded = FormEncoding.decode("a+b=c%26d&e&f=1=2")
        #expect(decoded.map(\.name) == ["a b", "e", "f"])
        #expect(decoded.map(\.value) == ["c&d", "", "1=2"])
    }
}
