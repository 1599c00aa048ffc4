//! Stara: one `credential_provider!` block.

credential_provider! {
    /// Stara credentials: your API key and the grower's tokens.
    Stara {
        name: "Stara",
        title: "Stara Telemetria",
        slug: "stara-credentials",
        object: "staraCredentials",
        operation: "stara",
        request: StaraCredentialsRequest,
        response: StaraCredentials,
        fields: {
            /// Your API key from Stara.
            required secret api_key: String,
            /// The grower's access token.
            required secret access_token: String,
            /// The client access token Stara issued with it.
            required secret access_token_client: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
        },
        extras: {},
        // Stara's token endpoint (Leaf's Stara tutorial).
        check: CheckKind::StaraRemint(Endpoints::published(
            "https://v2apitelemetria.telemetriastara.com.br/token"
        )),
        example: {
            "apiKey": "your-api-key",
            "accessToken": "grower-access-token",
            "accessTokenClient": "grower-access-token-client",
            "refreshToken": "grower-refresh-token"
        },
    }
}
