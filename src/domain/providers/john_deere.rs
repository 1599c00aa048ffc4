//! John Deere Operations Center: one `credential_provider!` block.

credential_provider! {
    /// John Deere Operations Center credentials: your application's key and secret and the
    /// grower's refresh token.
    JohnDeere {
        name: "John Deere",
        title: "John Deere Operations Center",
        slug: "john-deere-credentials",
        object: "johnDeereCredentials",
        operation: "john_deere",
        request: JohnDeereCredentialsRequest,
        response: JohnDeereCredentials,
        fields: {
            /// Your application's key (client id) from developer.deere.com.
            required plain client_key: String,
            /// Your application's secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which John Deere environment the application is registered in.
            required environment client_environment: ClientEnvironment,
            /// An access token, if you already hold a valid one.
            optional secret access_token: Option<String>,
        },
        extras: {
            /// The scopes granted (legacy copy of `tokenMetadata.scopes`).
            scopes: Vec<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
            /// OAuth 1 token id (legacy credentials only; otherwise null).
            token_id: Option<String>,
            /// OAuth 1 token secret (legacy credentials only; otherwise null).
            token_secret_key: Option<String>,
        },
        check: CheckKind::OAuthRefresh(OAuthCheck {
            client_auth: ClientAuth::Basic { id: "clientKey", secret: "clientSecret" },
            production_token_url: Some("https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7/v1/token"),
            stage_token_url: Some("https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7/v1/token"),
        }),
        example: {
            "clientKey": "your-client-key",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "PRODUCTION"
        },
    }
}
