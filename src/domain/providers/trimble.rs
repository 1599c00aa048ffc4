//! Trimble: one `credential_provider!` block.

credential_provider! {
    /// Trimble credentials: your application's client id and secret and the grower's refresh
    /// token (single-use: every refresh issues a new one).
    Trimble {
        name: "Trimble",
        title: "Trimble Agriculture",
        slug: "trimble-credentials",
        object: "trimbleCredentials",
        operation: "trimble",
        request: TrimbleCredentialsRequest,
        response: TrimbleCredentials,
        fields: {
            /// Your application's client id from Trimble Identity.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
        },
        check: CheckKind::OAuthRefresh(OAuthCheck {
            client_auth: ClientAuth::Basic { id: "clientId", secret: "clientSecret" },
            production_token_url: Some("https://id.trimble.com/oauth/token"),
            stage_token_url: None,
        }),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token"
        },
    }
}
